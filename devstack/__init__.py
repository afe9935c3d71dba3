"""The local stack: moto for AWS, a GitHub simulator, shims for what moto does not run, a demo CLI.

Development tooling only: never packaged into the Lambda zip.
"""
