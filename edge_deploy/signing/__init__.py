"""Image signatures in cosign's format, attached to the signed image as OCI 1.1 referrers.

keys      the signing key (an ECDSA P-256 PEM file, EDGE_SIGNING_KEY_FILE) and its public half
cosign    what is signed (cosign's "simple signing" payload) and the signature manifest
attach    pushing a signature: blobs, the manifest with its subject, the referrers tag fallback
verify    finding an image's signatures and checking them against a public key
"""
