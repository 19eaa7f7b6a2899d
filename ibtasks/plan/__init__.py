"""Pure planning: load addresses, device-tree edits, boot script text, partition contents and
xl configs.

Nothing here writes a file; every function returns values or text.
"""
