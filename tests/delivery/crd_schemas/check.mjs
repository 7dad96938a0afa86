// Check Kubernetes objects of custom resource kinds against their published API schemas.
//
//     node check.mjs OBJECTS.json     (a JSON array of objects)
//
// Each object is checked twice, both with code the project did not write:
//   1. the schema validator that @kubernetes-models publishes for its kind (types, required fields, enums,
//      patterns, lengths, item counts), generated from the kind's Go API types;
//   2. TypeScript's excess-property check against the same package's type declarations, which names a field
//      the kind does not have (the schema validator lets unknown fields pass, as `kubectl --strict` would not).
// Prints one line per problem (`Kind/name: ...`) and exits 1 when there is any; an object of a kind without a
// schema here is a problem too, so that a new custom resource cannot go unchecked.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const HERE = dirname(fileURLToPath(import.meta.url));
const GATEWAY = "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1";
const KEDA = "@kubernetes-models/keda/keda.sh/v1alpha1";
const KINDS = {
  "gateway.networking.k8s.io/v1 Gateway": GATEWAY,
  "gateway.networking.k8s.io/v1 HTTPRoute": GATEWAY,
  "keda.sh/v1alpha1 ScaledObject": KEDA,
  "keda.sh/v1alpha1 TriggerAuthentication": KEDA,
};

const label = (object) => `${object.kind}/${object.metadata?.name ?? "?"}`;

async function schemaProblems(object, module) {
  const { [object.kind]: Model } = await import(`${module}/${object.kind}`);
  try {
    new Model(object).validate();
    return [];
  } catch (error) {
    return [`${label(object)}: ${error.message}`];
  }
}

function fieldProblems(objects) {
  // one in-memory source file beside node_modules, line N typing object N: `import type ...; const objectN: T = {...};`
  const file = join(HERE, "objects.ts");
  const lines = objects.map(({ object, module }, index) =>
    `import type { I${object.kind} as T${index} } from "${module}/${object.kind}"; ` +
    `export const object${index}: T${index} = ${JSON.stringify(object)};`);
  const source = lines.join("\n");
  const options = { strict: true, noEmit: true, skipLibCheck: true, target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.readFile = (name) => (name === file ? source : readFile(name));
  host.fileExists = (name) => name === file || ts.sys.fileExists(name);
  host.getSourceFile = (name, version, ...rest) =>
    name === file ? ts.createSourceFile(name, source, version) : getSourceFile(name, version, ...rest);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const text = ts.flattenDiagnosticMessageText(diagnostic.messageText, " ");
    if (diagnostic.file?.fileName !== file) return `schema package: ${text}`;
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
    return `${label(objects[line].object)}: ${text}`;
  });
}

async function main() {
  if (process.argv.length !== 3) {
    console.error("usage: node check.mjs OBJECTS.json");
    process.exit(2);
  }
  const problems = [];
  const known = [];
  for (const object of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
    const module = KINDS[`${object.apiVersion} ${object.kind}`];
    if (!module) {
      problems.push(`${label(object)}: no schema for ${object.apiVersion} ${object.kind} here (add its package)`);
      continue;
    }
    known.push({ object, module });
    problems.push(...(await schemaProblems(object, module)));
  }
  if (known.length) problems.push(...fieldProblems(known));
  for (const problem of problems) console.log(problem);
  console.error(`${known.length} objects checked, ${problems.length} problems`);
  process.exit(problems.length ? 1 : 0);
}

await main();
