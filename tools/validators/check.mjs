// The Node validators of `make validate` (installed by `make validators` into ./node_modules):
//   node check.mjs asyncapi <asyncapi.json>   the official AsyncAPI parser (@asyncapi/parser):
//                                             resolves the $refs, validates the document, its
//                                             bindings and payload schemas; fails on errors
//   node check.mjs crds <objects.json>        KEDA's and the Prometheus Operator's CRD schemas
//                                             (kubernetes-models): validates every object of a
//                                             kind they know; fails on errors
//   node check.mjs versions                   the packages' versions, as JSON
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const PACKAGES = ["@asyncapi/parser", "@kubernetes-models/keda", "@kubernetes-models/prometheus-operator"];

function version(pkg) {
  return JSON.parse(readFileSync(join(here, "node_modules", pkg, "package.json"), "utf8")).version;
}

async function asyncapi(path) {
  const { Parser, fromFile } = await import("@asyncapi/parser");
  const { document, diagnostics } = await fromFile(new Parser(), path).parse();
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const d of diagnostics) {
    const level = ["error", "warning", "info", "hint"][d.severity] ?? d.severity;
    console.log(`  ${level}: ${d.code}: ${d.message} at /${d.path.join("/")}`);
  }
  if (!document || errors.length) {
    console.log(`  ${path}: ${errors.length} errors`);
    return 1;
  }
  const messages = document.messages().all().length;
  console.log(
    `  ${path}: AsyncAPI ${document.version()}, ${document.channels().all().length} channels, ` +
      `${messages} messages with resolved payload schemas, ${diagnostics.length} diagnostics`,
  );
  return 0;
}

async function crds(path) {
  const keda = await import("@kubernetes-models/keda/keda.sh/v1alpha1");
  const monitoring = await import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");
  const models = {
    "keda.sh/v1alpha1": keda,
    "monitoring.coreos.com/v1": monitoring,
  };
  let failed = 0;
  let checked = 0;
  for (const obj of JSON.parse(readFileSync(path, "utf8"))) {
    const model = models[obj.apiVersion]?.[obj.kind];
    if (!model) continue;
    checked += 1;
    const where = `${obj.kind}/${obj.metadata?.name}`;
    try {
      new model(obj).validate();
      console.log(`  ${where}: valid (${obj.apiVersion})`);
    } catch (err) {
      failed += 1;
      console.log(`  ${where}: INVALID: ${err.message}`);
    }
  }
  if (!checked) {
    console.log("  no KEDA or Prometheus Operator object found");
    return 1;
  }
  return failed ? 1 : 0;
}

const [command, arg] = process.argv.slice(2);
let code = 2;
if (command === "versions") {
  console.log(JSON.stringify(Object.fromEntries(PACKAGES.map((p) => [p, version(p)]))));
  code = 0;
} else if (command === "asyncapi") {
  code = await asyncapi(arg);
} else if (command === "crds") {
  code = await crds(arg);
} else {
  console.error("usage: node check.mjs asyncapi FILE | crds FILE | versions");
}
process.exit(code);
