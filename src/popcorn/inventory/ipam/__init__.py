"""IPAM, circuits and power: the rest of NetBox's core beside the DCIM inventory."""
