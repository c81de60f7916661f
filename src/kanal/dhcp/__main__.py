"""``python -m kanal.dhcp``: the DHCP daemon (same as ``kanal dhcp daemon``)."""

from kanal.dhcp.daemon import main

main()
