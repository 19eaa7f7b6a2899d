"""The one device-tree model: trees of the `fdt` package's nodes, parsed and written by `tree`,
edited by `edits` (as U-Boot's `fdt` commands would), read for facts by `facts`; FIT images
(`formats.fit`) are trees of the same kind."""
