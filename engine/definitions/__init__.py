"""Campaign definition files: schema (pydantic), loader with file:line errors, versioning."""
