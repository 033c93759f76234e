"""The portal's REST API (/api/v1/): thin views over the same services as the pages."""
