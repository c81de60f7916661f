"""DHCP for containers: the ``dhcp`` IPAM plugin's daemon, client and wire format."""
