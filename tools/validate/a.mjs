import { Parser, fromFile } from "@asyncapi/parser";
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, process.argv[2]).parse();
for (const d of diagnostics) console.log(d.severity, d.code, d.message, JSON.stringify(d.path));
console.log("doc?", !!document, document && document.version());
if (document) { const m = document.messages().all()[0]; console.log(m.name(), Object.keys(m.payload().json()).slice(0,6)); }
