#!/usr/bin/env python
"""Flip the last byte of an object in the test bucket, behind the store's back.

    corrupt_object.py ENDPOINT_URL BUCKET KEY
"""

import sys

import boto3
import botocore.config


def main(endpoint, bucket, key):
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1", config=botocore.config.Config(s3={"addressing_style": "path"}))
    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=data[:-1] + bytes([data[-1] ^ 0xFF]))


if __name__ == "__main__":
    main(*sys.argv[1:4])
