#!/usr/bin/env python3
"""Decrypts a stored object with the official AWS Encryption SDK for Python
and the material providers' AWS KMS RSA keyring, against the gateway's
embedded local KMS (boto3 with an endpoint URL), streaming.

    py_decrypt.py KMS_ENDPOINT KEY_ARN BLOB

Prints {"sha256": hex of the plaintext, "size": n, "context": {...}}.
"""
import hashlib
import json
import sys

import aws_encryption_sdk
import boto3
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsRsaKeyringInput
from aws_encryption_sdk.identifiers import CommitmentPolicy
from cryptography.hazmat.primitives import serialization

endpoint, arn, blob = sys.argv[1:4]
kms = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint,
                   aws_access_key_id="local", aws_secret_access_key="local")
der = kms.get_public_key(KeyId=arn)["PublicKey"]
pem = serialization.load_der_public_key(der).public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
keyring = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig()).create_aws_kms_rsa_keyring(
    input=CreateAwsKmsRsaKeyringInput(kms_key_id=arn, public_key=pem,
                                      encryption_algorithm="RSAES_OAEP_SHA_256", kms_client=kms))
client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
h = hashlib.sha256()
size = 0
with open(blob, "rb") as f, client.stream(mode="d", source=f, keyring=keyring) as dec:
    for chunk in dec:
        h.update(chunk)
        size += len(chunk)
    context = dict(dec.header.encryption_context)
print(json.dumps({"sha256": h.hexdigest(), "size": size, "context": context}))
