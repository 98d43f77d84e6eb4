"""DynamoDB single-table storage. The only package that knows keys, item shapes and boto3."""
