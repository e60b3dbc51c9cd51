"""Which Debian package versions a run names, from the root that ran each daemon."""

from __future__ import annotations

from testbed.host import packages
from tests.conftest import make_fake_lab

QUERY = ("bind9\t1:9.20.23-1~bpo12+1\tii \nradvd\t1:2.19-1\tii \ntcpdump\t4.99.3-1\trc \n"
         "isc-dhcp-server\t\tun \n")


def test_only_installed_packages_are_named():
    assert packages.parse(QUERY) == {"bind9": "1:9.20.23-1~bpo12+1", "radvd": "1:2.19-1"}


def test_the_query_asks_for_what_it_parses():
    argv = packages.query_argv(["bind9"])
    assert argv[:2] == ["dpkg-query", "-W"] and argv[-1] == "bind9"
    assert argv[3].count("\\t") == 2


def test_a_container_lab_names_its_images_versions_over_the_hosts(run_root, fake_backend):
    lab = make_fake_lab(fake_backend)
    for node in ("dns", "ar1", "mn"):
        rt = fake_backend.runtime(lab.state, node)
        rt.outputs["dpkg-query"] = {"dns": "bind9\t9.99-image\tii \n", "ar1": "radvd\t7-image\tii \n",
                                    "mn": ""}[node]
    got = lab.package_versions()
    assert got["bind9"] == "9.99-image" and got["radvd"] == "7-image"
