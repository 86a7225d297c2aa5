#!/usr/bin/env python3
"""An independent KMS emulator for the tests: moto 5.2.5 in server mode on a
loopback port, with a small test-only patch so its RSA keys behave like AWS
KMS (stock moto cannot RSA-decrypt):

- Decrypt/Encrypt with EncryptionAlgorithm RSAES_OAEP_SHA_1/SHA_256 do real
  RSA-OAEP with the key moto holds, and answer KeyId = the key's ARN;
- Disabled keys give DisabledException, keys pending deletion
  KMSInvalidStateException, Decrypt without KeyId on an RSA key
  InvalidCiphertextException, a bad ciphertext InvalidCiphertextException;
- GetPublicKey answers KeyId = ARN and KeySpec.

    moto_kms.py serve [--spec RSA_3072]
        creates an RSA ENCRYPT_DECRYPT key with alias/files (and a symmetric
        one, alias/symmetric) and prints
        "ready URL KEY_ARN"; serves until stdin closes.
    moto_kms.py set-state URL KEY_ARN enable|disable
"""
import base64
import json
import sys

import boto3

REGION = "us-east-1"


def client(url):
    return boto3.client("kms", region_name=REGION, endpoint_url=url,
                        aws_access_key_id="test", aws_secret_access_key="test")


def patch_moto():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from moto.core.exceptions import JsonRESTError
    from moto.kms.responses import KmsResponse

    class KmsError(JsonRESTError):
        code = 400

        def __init__(self, name, message=""):
            super().__init__(name, message)

    oaep = {
        "RSAES_OAEP_SHA_1": hashes.SHA1,
        "RSAES_OAEP_SHA_256": hashes.SHA256,
    }
    stock_decrypt = KmsResponse.decrypt
    stock_encrypt = KmsResponse.encrypt
    stock_public_key = KmsResponse.get_public_key

    def rsa_key(self, key_id):
        self._validate_key_id(key_id)
        key = self.kms_backend.describe_key(key_id)
        if not key.key_spec.startswith("RSA_"):
            return None
        if key.key_state == "Disabled":
            raise KmsError("DisabledException", f"{key.arn} is disabled.")
        if key.key_state != "Enabled":
            raise KmsError("KMSInvalidStateException", f"{key.arn} is {key.key_state}.")
        return key

    def algorithm(self):
        name = self._get_param("EncryptionAlgorithm")
        if name not in oaep:
            raise KmsError("InvalidKeyUsageException", f"EncryptionAlgorithm {name} is not valid for an RSA key")
        h = oaep[name]()
        return name, padding.OAEP(mgf=padding.MGF1(algorithm=h), algorithm=h, label=None)

    def decrypt(self):
        key_id = self._get_param("KeyId")
        if not key_id:
            return stock_decrypt(self)
        key = rsa_key(self, key_id)
        if key is None:
            return stock_decrypt(self)
        name, pad = algorithm(self)
        try:
            plaintext = key.private_key.private_key.decrypt(self._get_param("CiphertextBlob"), pad)
        except ValueError:
            raise KmsError("InvalidCiphertextException", "")
        return json.dumps({"Plaintext": base64.b64encode(plaintext).decode(),
                           "KeyId": key.arn, "EncryptionAlgorithm": name})

    def encrypt(self):
        key = rsa_key(self, self._get_param("KeyId"))
        if key is None:
            return stock_encrypt(self)
        name, pad = algorithm(self)
        blob = key.private_key.private_key.public_key().encrypt(self._get_param("Plaintext"), pad)
        return json.dumps({"CiphertextBlob": base64.b64encode(blob).decode(),
                           "KeyId": key.arn, "EncryptionAlgorithm": name})

    def get_public_key(self):
        answer = json.loads(stock_public_key(self))
        key = self.kms_backend.describe_key(self._get_param("KeyId"))
        answer["KeyId"] = key.arn
        answer["KeySpec"] = key.key_spec
        return json.dumps(answer)

    KmsResponse.decrypt = decrypt
    KmsResponse.encrypt = encrypt
    KmsResponse.get_public_key = get_public_key


def serve(spec):
    patch_moto()
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    kms = client(url)
    arn = kms.create_key(KeyUsage="ENCRYPT_DECRYPT", KeySpec=spec)["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/files", TargetKeyId=arn)
    other = kms.create_key(KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/symmetric", TargetKeyId=other)
    print(f"ready {url} {arn}", flush=True)
    sys.stdin.read()
    server.stop()


def main():
    args = sys.argv[1:]
    if args[:1] == ["serve"]:
        serve(args[2] if args[1:2] == ["--spec"] else "RSA_3072")
    elif args[:1] == ["set-state"] and len(args) == 4:
        kms = client(args[1])
        key_id = args[2].split(":key/")[-1]  # moto's Enable/DisableKey want the bare id
        (kms.enable_key if args[3] == "enable" else kms.disable_key)(KeyId=key_id)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
