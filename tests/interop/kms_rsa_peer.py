#!/usr/bin/env python3
"""The official AWS Encryption SDK for Python with the material providers'
AWS KMS RSA keyring, against a KMS endpoint (the gateway's embedded local
KMS), streaming:

    kms_rsa_peer.py decrypt KMS_ENDPOINT KEY_ARN BLOB
        prints {"sha256": hex of the plaintext, "size": n, "context": {...}}
    kms_rsa_peer.py encrypt KMS_ENDPOINT KEY_ARN PLAIN OUT CONTEXT_JSON
        writes the message (suite 0x0478, 64 KiB frames) to OUT
"""
import hashlib
import json
import sys

import aws_encryption_sdk
import boto3
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsRsaKeyringInput
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
from cryptography.hazmat.primitives import serialization

mode, endpoint, arn = sys.argv[1:4]
kms = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint)
der = kms.get_public_key(KeyId=arn)["PublicKey"]
pem = serialization.load_der_public_key(der).public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
keyring = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig()).create_aws_kms_rsa_keyring(
    input=CreateAwsKmsRsaKeyringInput(kms_key_id=arn, public_key=pem,
                                      encryption_algorithm="RSAES_OAEP_SHA_256", kms_client=kms))
client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
if mode == "encrypt":
    plain, out, context = sys.argv[4], sys.argv[5], json.loads(sys.argv[6])
    with open(plain, "rb") as src, open(out, "wb") as dst, client.stream(
            mode="e", source=src, keyring=keyring, encryption_context=context,
            algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, frame_length=65536) as enc:
        for chunk in enc:
            dst.write(chunk)
    sys.exit(0)

blob = sys.argv[4]
h = hashlib.sha256()
size = 0
with open(blob, "rb") as f, client.stream(mode="d", source=f, keyring=keyring) as dec:
    for chunk in dec:
        h.update(chunk)
        size += len(chunk)
    context = dict(dec.header.encryption_context)
print(json.dumps({"sha256": h.hexdigest(), "size": size, "context": context}))
