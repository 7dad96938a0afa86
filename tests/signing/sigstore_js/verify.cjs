// Verifies cosign-format, key-based signatures with Sigstore's own JavaScript verifier
// (@sigstore/verify), an implementation this project did not write. Each signature is wrapped in a
// Sigstore bundle (v0.3) whose verification material is the public key's hint; there is no
// transparency log or timestamp authority offline, so their thresholds are 0.
//
// stdin:  {"public_key_der_b64": ..., "checks": [{"name": ..., "kind": "message", "payload_b64": ...,
//          "signature_b64": ...} | {"name": ..., "kind": "dsse", "envelope": {DSSE JSON}}]}
// stdout: {"<name>": "ok" | "<the verifier's error>"}
"use strict";
const crypto = require("crypto");
const { bundleFromJSON } = require("@sigstore/bundle");
const { Verifier, toSignedEntity, toTrustMaterial } = require("@sigstore/verify");

const HINT = "edge-deploy-release-key";

function bundleFor(check) {
  const material = { publicKey: { hint: HINT }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } };
  const bundle = { mediaType: "application/vnd.dev.sigstore.bundle.v0.3+json", verificationMaterial: material };
  if (check.kind === "dsse") {
    bundle.dsseEnvelope = check.envelope;
  } else {
    const payload = Buffer.from(check.payload_b64, "base64");
    const digest = crypto.createHash("sha256").update(payload).digest("base64");
    bundle.messageSignature = { messageDigest: { algorithm: "SHA2_256", digest }, signature: check.signature_b64 };
  }
  return bundleFromJSON(bundle);
}

function main(input) {
  const request = JSON.parse(input);
  const keys = { [HINT]: { rawBytes: Buffer.from(request.public_key_der_b64, "base64") } };
  const root = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] };
  const verifier = new Verifier(toTrustMaterial(root, keys), {
    tlogThreshold: 0,
    ctlogThreshold: 0,
    timestampThreshold: 0,
  });
  const results = {};
  for (const check of request.checks) {
    try {
      const artifact = check.kind === "dsse" ? undefined : Buffer.from(check.payload_b64, "base64");
      verifier.verify(toSignedEntity(bundleFor(check), artifact));
      results[check.name] = "ok";
    } catch (error) {
      results[check.name] = String(error.message || error);
    }
  }
  process.stdout.write(JSON.stringify(results));
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => main(input));
