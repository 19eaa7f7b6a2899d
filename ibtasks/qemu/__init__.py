"""Booting what ibtasks built: QEMU with real U-Boot, Xen and Linux, watched for markers.
"""
