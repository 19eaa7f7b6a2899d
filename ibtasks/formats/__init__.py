"""Bytes in, bytes out: the file formats ibtasks reads and writes (DTB, uImage, FIT, GPT, MBR,
FAT, ext4, archives, file types).

Nothing here knows the config or the pipeline. Builders of large images (FAT, ext4, the disk)
write to the path their caller, a task, gives them.
"""
