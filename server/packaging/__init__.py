"""Python packaging rules: project names, distribution metadata, doc zips, archive limits."""
