"""AWS adapters: small, typed wrappers around the boto3 calls the lifecycle code needs."""
