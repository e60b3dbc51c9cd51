"""Node runtimes: where a node's commands run and whose kernel carries its packets.

``namespace`` (the host kernel in a named netns), ``uml`` (a User-Mode Linux kernel started in
that netns) and ``qemu`` (a kernel under test in a QEMU VM in that netns) implement one
protocol, ``base.NodeRuntime``; nothing above this package asks which one it holds.
"""
