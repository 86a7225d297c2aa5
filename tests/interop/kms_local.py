#!/usr/bin/env python3
"""Talks to kms-envelope's embedded local KMS as AWS tooling does: boto3 for
the KMS API, and the material providers' AWS KMS RSA keyring for messages.

    kms_local.py ENDPOINT KEY_ARN WORKDIR

Reads WORKDIR/ours.esdk (made by kms-envelope) and WORKDIR/plain.bin;
writes WORKDIR/python.esdk (made here) and WORKDIR/results.json: a list of
{"name", "ok", "detail"} checks.
"""
import json
import os
import sys

import boto3
import botocore.exceptions

endpoint, arn, work = sys.argv[1:4]
kms = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint)
results = []


def check(name, ok, detail=""):
    results.append({"name": name, "ok": bool(ok), "detail": str(detail)})


def error_name(f):
    try:
        f()
        return None
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


# The KMS API through boto3.
d = kms.describe_key(KeyId=arn)["KeyMetadata"]
check("DescribeKey", d["Arn"] == arn and d["KeySpec"] == "RSA_2048" and d["KeyState"] == "Enabled", d)
pk = kms.get_public_key(KeyId="alias/files")
check("GetPublicKey by alias", pk["KeyId"] == arn and pk["KeyUsage"] == "ENCRYPT_DECRYPT"
      and "RSAES_OAEP_SHA_256" in pk["EncryptionAlgorithms"] and len(pk["PublicKey"]) > 250, pk.get("KeyId"))
ct = kms.encrypt(KeyId=arn, Plaintext=b"hello", EncryptionAlgorithm="RSAES_OAEP_SHA_256")["CiphertextBlob"]
pt = kms.decrypt(KeyId=arn, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
check("Encrypt/Decrypt", pt["Plaintext"] == b"hello" and pt["KeyId"] == arn)
check("Decrypt without KeyId", error_name(lambda: kms.decrypt(CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")) == "InvalidCiphertextException")
check("Decrypt garbage", error_name(lambda: kms.decrypt(KeyId=arn, CiphertextBlob=b"x" * 256, EncryptionAlgorithm="RSAES_OAEP_SHA_256")) == "InvalidCiphertextException")
check("Decrypt with the wrong OAEP hash", error_name(lambda: kms.decrypt(KeyId=arn, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_1")) == "InvalidCiphertextException")
check("unknown key", error_name(lambda: kms.describe_key(KeyId="1234abcd-0000-0000-0000-000000000000")) == "NotFoundException")
check("ListAliases", any(a["AliasName"] == "alias/files" for a in kms.list_aliases()["Aliases"]))

# SigV4 as botocore signs it: a signed request is answered; the same request
# with its body changed after signing, or signed with another secret, is not.
import urllib.error
import urllib.request
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def signed_call(body, creds, tamper=None):
    req = AWSRequest(method="POST", url=endpoint + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.Decrypt"})
    SigV4Auth(creds, "kms", "us-east-1").add_auth(req)
    data = tamper(body) if tamper else body
    r = urllib.request.Request(endpoint + "/", data=data, method="POST", headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


import base64
good = boto3.Session().get_credentials().get_frozen_credentials()
body = json.dumps({"KeyId": arn, "CiphertextBlob": base64.b64encode(ct).decode(), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}).encode()
status, answer = signed_call(body, Credentials(good.access_key, good.secret_key))
check("a botocore-signed request is answered", status == 200 and base64.b64decode(answer["Plaintext"]) == b"hello", status)
status, answer = signed_call(body, Credentials(good.access_key, good.secret_key), lambda b: b.replace(b"SHA_256", b"SHA_1  "))
check("a body changed after signing is refused", status == 400 and answer.get("__type") == "InvalidSignatureException", answer)
status, answer = signed_call(body, Credentials(good.access_key, "x" + good.secret_key[1:]))
check("another secret is refused", status == 400 and answer.get("__type") == "InvalidSignatureException", answer)
status, answer = signed_call(body, Credentials("AKIAIOSFODNN7EXAMPLE", good.secret_key))
check("another access key is refused", status == 400 and answer.get("__type") == "UnrecognizedClientException", answer)

# The AWS Encryption SDK's KMS RSA keyring against the local KMS.
import aws_encryption_sdk
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsRsaKeyringInput
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
from cryptography.hazmat.primitives import serialization

der = pk["PublicKey"]
pem = serialization.load_der_public_key(der).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
keyring = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig()).create_aws_kms_rsa_keyring(
    input=CreateAwsKmsRsaKeyringInput(kms_key_id=arn, public_key=pem, encryption_algorithm="RSAES_OAEP_SHA_256", kms_client=kms))
client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
plain = open(os.path.join(work, "plain.bin"), "rb").read()
made, _ = client.encrypt(source=plain, keyring=keyring, encryption_context={"owner": "alice"},
                         algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, frame_length=4096)
open(os.path.join(work, "python.esdk"), "wb").write(made)
try:
    theirs, header = client.decrypt(source=open(os.path.join(work, "ours.esdk"), "rb").read(), keyring=keyring)
    check("Python KMS RSA keyring decrypts kms-envelope's message", theirs == plain and header.encryption_context.get("owner") == "alice")
except Exception as e:  # reported as a failed check
    check("Python KMS RSA keyring decrypts kms-envelope's message", False, "%s: %s" % (type(e).__name__, e))

json.dump(results, open(os.path.join(work, "results.json"), "w"))
