"""The doit task layer: task generators, task records, the build state and the output guard.

The only code that imports doit.
"""
