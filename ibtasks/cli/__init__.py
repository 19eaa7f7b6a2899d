"""The drop-in command lines (uboot-script-gen, disk_image) and the no-op fast path.
"""
