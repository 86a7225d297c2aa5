#!/usr/bin/env python3
"""Runs a batch of encrypt/decrypt jobs with the official AWS Encryption SDK for
Python (aws-encryption-sdk 4.x; aws-cryptographic-material-providers for the
AWS KMS RSA keyring).

    peer.py KEYS_DIR JOBS.json RESULTS.json

JOBS.json: {"jobs": [job, ...]}, each job
    {"op": "encrypt" | "decrypt",
     "keyring": "raw-aes-BITS" | "raw-rsa-PADDING-BITS" | "kms-rsa-ALGORITHM",
     "suite": "0x0478", "frame_length": 4096, "context": {...},
     "policy": "require-encrypt-require-decrypt" | "require-encrypt-allow-decrypt"
               | "forbid-encrypt-allow-decrypt",
     "input": PATH, "output": PATH,
     "required_keys": [...],  # optional: the material providers' Required
                              # Encryption Context CMM over the keyring
     "reproduced": {...}}     # optional, decrypt: the reproduced context
RESULTS.json: [{"ok": true} | {"ok": false, "error": "..."}, ...] in job order.

Keys come from KEYS_DIR (the test keys of tests/vectors/keys): namespace
"kms-envelope-test", key names "aes-BITS" and "rsa-BITS". The KMS RSA keyring
uses key ARN KEY_ARN with rsa-2048; its KMS client is a real boto3 client
whose Decrypt is answered locally, like KMS would answer for an asymmetric
key: RSA-OAEP with the private key, KeyId = the ARN, no encryption context.
"""
import base64
import json
import sys

import aws_encryption_sdk
from aws_encryption_sdk.identifiers import (
    Algorithm,
    CommitmentPolicy,
    EncryptionKeyType,
    WrappingAlgorithm,
)
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey

NAMESPACE = "kms-envelope-test"
KEY_ARN = "arn:aws:kms:us-west-2:111122223333:key/0a1b2c3d-0000-4000-8000-000000000001"

POLICIES = {
    "require-encrypt-require-decrypt": CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
    "require-encrypt-allow-decrypt": CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT,
    "forbid-encrypt-allow-decrypt": CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
}
RSA_PADDINGS = {
    "pkcs1": WrappingAlgorithm.RSA_PKCS1,
    "oaep-sha1": WrappingAlgorithm.RSA_OAEP_SHA1_MGF1,
    "oaep-sha256": WrappingAlgorithm.RSA_OAEP_SHA256_MGF1,
    "oaep-sha384": WrappingAlgorithm.RSA_OAEP_SHA384_MGF1,
    "oaep-sha512": WrappingAlgorithm.RSA_OAEP_SHA512_MGF1,
}
AES_WRAPPING = {
    128: WrappingAlgorithm.AES_128_GCM_IV12_TAG16_NO_PADDING,
    192: WrappingAlgorithm.AES_192_GCM_IV12_TAG16_NO_PADDING,
    256: WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
}


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Peer:
    def __init__(self, keys_dir):
        self.keys_dir = keys_dir
        self._kms_keyrings = {}

    def raw_key(self, spec, op):
        if spec.startswith("raw-aes-"):
            bits = int(spec[len("raw-aes-"):])
            return RawMasterKey(
                provider_id=NAMESPACE,
                key_id=("aes-%d" % bits).encode(),
                wrapping_key=WrappingKey(
                    wrapping_algorithm=AES_WRAPPING[bits],
                    wrapping_key=read("%s/aes-%d.key" % (self.keys_dir, bits)),
                    wrapping_key_type=EncryptionKeyType.SYMMETRIC,
                ),
            )
        padding, bits = spec[len("raw-rsa-"):].rsplit("-", 1)
        if op == "encrypt":
            material, kind = read("%s/rsa-%s.pub.pem" % (self.keys_dir, bits)), EncryptionKeyType.PUBLIC
        else:
            material, kind = read("%s/rsa-%s.pem" % (self.keys_dir, bits)), EncryptionKeyType.PRIVATE
        return RawMasterKey(
            provider_id=NAMESPACE,
            key_id=("rsa-%s" % bits).encode(),
            wrapping_key=WrappingKey(
                wrapping_algorithm=RSA_PADDINGS[padding], wrapping_key=material, wrapping_key_type=kind
            ),
        )

    def kms_client(self):
        """A boto3 KMS client whose Decrypt runs locally with the private key."""
        import boto3
        from botocore.awsrequest import AWSResponse
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        private = serialization.load_pem_private_key(read("%s/rsa-2048.pem" % self.keys_dir), None)
        client = boto3.client(
            "kms",
            region_name="us-west-2",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            endpoint_url="http://127.0.0.1:1",  # never contacted
        )
        captured = {}

        def capture(params, **_):
            captured.clear()
            captured.update(params)

        def answer(**_):
            if captured.get("KeyId") != KEY_ARN:
                raise client.exceptions.IncorrectKeyException(
                    {"Error": {"Code": "IncorrectKeyException", "Message": "wrong key"}}, "Decrypt"
                )
            if "EncryptionContext" in captured:
                raise client.exceptions.InvalidCiphertextException(
                    {"Error": {"Code": "InvalidCiphertextException", "Message": "no context for RSA"}}, "Decrypt"
                )
            alg = captured["EncryptionAlgorithm"]
            h = {"RSAES_OAEP_SHA_1": hashes.SHA1, "RSAES_OAEP_SHA_256": hashes.SHA256}[alg]()
            pt = private.decrypt(
                captured["CiphertextBlob"], padding.OAEP(mgf=padding.MGF1(algorithm=h), algorithm=h, label=None)
            )
            http = AWSResponse("http://127.0.0.1:1/", 200, {}, None)
            return http, {"KeyId": KEY_ARN, "Plaintext": pt, "EncryptionAlgorithm": alg}

        client.meta.events.register("before-parameter-build.kms.Decrypt", capture)
        client.meta.events.register("before-call.kms.Decrypt", answer)
        return client

    def kms_keyring(self, alg):
        if alg not in self._kms_keyrings:
            from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
            from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
            from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsRsaKeyringInput

            mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
            self._kms_keyrings[alg] = mpl.create_aws_kms_rsa_keyring(
                input=CreateAwsKmsRsaKeyringInput(
                    kms_key_id=KEY_ARN,
                    public_key=read("%s/rsa-2048.pub.pem" % self.keys_dir),
                    encryption_algorithm=alg,
                    kms_client=self.kms_client(),
                )
            )
        return self._kms_keyrings[alg]

    def mpl_keyring(self, spec):
        """The material providers' keyring for SPEC (raw-aes-BITS or kms-rsa-ALG)."""
        if spec.startswith("kms-rsa-"):
            return self.kms_keyring(spec[len("kms-rsa-"):])
        from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
        from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
        from aws_cryptographic_material_providers.mpl.models import AesWrappingAlg, CreateRawAesKeyringInput

        bits = int(spec[len("raw-aes-"):])
        mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
        return mpl.create_raw_aes_keyring(
            input=CreateRawAesKeyringInput(
                key_namespace=NAMESPACE,
                key_name="aes-%d" % bits,
                wrapping_key=read("%s/aes-%d.key" % (self.keys_dir, bits)),
                wrapping_alg=getattr(AesWrappingAlg, "ALG_AES%d_GCM_IV12_TAG16" % bits),
            )
        )

    def required_cmm(self, spec, keys):
        """The Required Encryption Context CMM for KEYS over SPEC's keyring."""
        from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
        from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
        from aws_cryptographic_material_providers.mpl.models import (
            CreateDefaultCryptographicMaterialsManagerInput,
            CreateRequiredEncryptionContextCMMInput,
        )

        mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
        default = mpl.create_default_cryptographic_materials_manager(
            input=CreateDefaultCryptographicMaterialsManagerInput(keyring=self.mpl_keyring(spec))
        )
        return mpl.create_required_encryption_context_cmm(
            input=CreateRequiredEncryptionContextCMMInput(
                underlying_cmm=default, required_encryption_context_keys=list(keys)
            )
        )

    def run(self, job):
        client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=POLICIES[job["policy"]])
        spec = job["keyring"]
        if "required_keys" in job:
            key_args = {"materials_manager": self.required_cmm(spec, job["required_keys"])}
        elif spec.startswith("kms-rsa-"):
            key_args = {"keyring": self.kms_keyring(spec[len("kms-rsa-"):])}
        else:
            key_args = {"key_provider": self.raw_key(spec, job["op"])}
        data = read(job["input"])
        if job["op"] == "encrypt":
            suite = Algorithm.get_by_id(int(job["suite"], 16))
            out, _ = client.encrypt(
                source=data,
                encryption_context=job.get("context", {}),
                algorithm=suite,
                frame_length=job["frame_length"],
                **key_args
            )
        else:
            if "reproduced" in job:
                key_args["encryption_context"] = job["reproduced"]
            out, _ = client.decrypt(source=data, **key_args)
        with open(job["output"], "wb") as f:
            f.write(out)


def main():
    keys_dir, jobs_path, results_path = sys.argv[1:4]
    with open(jobs_path) as f:
        jobs = json.load(f)["jobs"]
    peer = Peer(keys_dir)
    results = []
    for job in jobs:
        try:
            peer.run(job)
            results.append({"ok": True})
        except Exception as e:  # reported per job, the batch goes on
            results.append({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
