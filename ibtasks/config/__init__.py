"""Reading a config: the settings table, the bash and YAML readers, and the validated model.
"""
