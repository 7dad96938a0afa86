"""An offline stand-in for Azure Key Vault's keys REST API and the Microsoft identity platform's token
endpoint, for the tests of signing with a key that never leaves the vault. It is a stand-in, not
Key Vault: it keeps keys in memory, knows one tenant and one application, and implements only:

    POST /{tenant}/oauth2/v2.0/token          client credentials (a secret, or a federated token as
                                              AKS workload identity presents it); scope <resource>/.default
    GET  /{tenant}/v2.0/.well-known/openid-configuration, /common/discovery/instance   (for MSAL)
    POST /keys/{name}/create                  EC P-256 keys only
    GET  /keys/{name}[/{version}]             the key bundle, its public half as a JWK
    POST /keys/{name}/{version}/sign          ES256 over a SHA-256 digest; the signature is r || s

Every vault request needs `api-version` and a bearer token for the vault's own resource; without one
the answer is 401 with Key Vault's challenge (`authorization`, `resource`). Errors are Key Vault's
JSON (`{"error": {"code", "message"}}`). `POST /_test/faults` arms a number of 503 answers, for the
retry tests. tests/signing/test_keyvault.py checks it with Microsoft's own clients (azure-identity,
azure-keyvault-keys), not only with ours.
"""
