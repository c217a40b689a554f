"""marketpipe's AWS CDK app: one construct per capability, configuration from cdk.json context."""
