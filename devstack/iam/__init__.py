"""IAM in the local stack: a policy evaluator and the authorizer that applies it to boto3 calls."""
