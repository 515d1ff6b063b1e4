#!/usr/bin/env node
// kqlcheck: validate .kql files with Microsoft's Kusto language service (@kusto/language-service-next),
// reporting syntax and semantic diagnostics (unknown table/column/function, wrong types) against the
// Log Analytics tables documented in tables.json.
//
// Usage: node tools/kqlcheck.mjs --schema monitors/schema/tables.json [--json] FILE_OR_DIR...
//   A directory is scanned recursively for *.kql (skipping node_modules, .venv, .devstack, .git).
//   Exit 0: no error-severity diagnostic; 1: at least one; 2: bad usage, schema or file.
//
// Query parameters (`declare query_parameters(Name:type, ...);` at the top of a file) are understood
// natively by the language service; `ingestion_time()` is one of its built-in functions.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const SKIP_DIRS = new Set(["node_modules", ".venv", ".devstack", ".git"]);
const USAGE = "usage: node tools/kqlcheck.mjs --schema TABLES_JSON [--json] FILE_OR_DIR...";

function fail(message) {
  console.error(`kqlcheck: ${message}`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { schema: null, json: false, paths: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--json") opts.json = true;
    else if (arg === "--schema") opts.schema = argv[++i];
    else if (arg.startsWith("--schema=")) opts.schema = arg.slice("--schema=".length);
    else if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else if (arg.startsWith("-")) fail(`unknown option ${arg}\n${USAGE}`);
    else opts.paths.push(arg);
  }
  if (!opts.schema || opts.paths.length === 0) fail(USAGE);
  return opts;
}

// The package is a Bridge.NET translation of the C# Kusto.Language library: loading the runtime
// (bridge) and then the library defines the globals `Bridge` and `Kusto`; it exports nothing.
function loadKusto() {
  const require = createRequire(import.meta.url);
  try {
    require("@kusto/language-service-next/bridge.min.js");
    require("@kusto/language-service-next/Kusto.Language.Bridge.min.js");
  } catch (err) {
    fail(`cannot load @kusto/language-service-next (run \`make install\` or \`npm ci\`): ${err.message}`);
  }
  return globalThis.Kusto.Language;
}

// tables.json: {"TableName": [["Column", "kqltype"], ...], "_about": "..."}.
function buildGlobals(K, schemaPath) {
  let doc;
  try {
    doc = JSON.parse(fs.readFileSync(schemaPath, "utf8"));
  } catch (err) {
    fail(`cannot read schema ${schemaPath}: ${err.message}`);
  }
  const { ColumnSymbol, DatabaseSymbol, ScalarTypes, TableSymbol } = K.Symbols;
  const tables = [];
  for (const [tableName, columns] of Object.entries(doc)) {
    if (!Array.isArray(columns)) continue; // "_about" and other notes
    const symbols = columns.map(([name, typeName]) => {
      // GetSymbol also accepts aliases (double -> real, boolean -> bool); null means unknown.
      const type = ScalarTypes.GetSymbol(typeName);
      if (!type) fail(`${schemaPath}: ${tableName}.${name} has unknown type ${JSON.stringify(typeName)}`);
      // ColumnSymbol(name, type, description, originalColumns, source, examples)
      return new ColumnSymbol(name, type, null, null, null, null);
    });
    tables.push(new TableSymbol.$ctor4(tableName, symbols)); // $ctor4: (name, ColumnSymbol[])
  }
  if (tables.length === 0) fail(`${schemaPath}: no tables found`);
  // Log Analytics exposes one workspace as one database; make it the default database.
  const db = new DatabaseSymbol.ctor("LogAnalytics", tables); // ctor: (name, Symbol[])
  return K.GlobalState.Default.WithDatabase(db);
}

function collectFiles(paths) {
  const files = [];
  const walk = (dir) => {
    const entries = fs.readdirSync(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : 1)); // stable, locale-independent order
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!SKIP_DIRS.has(entry.name)) walk(full);
      } else if (entry.isFile() && entry.name.endsWith(".kql")) files.push(full);
    }
  };
  for (const p of paths) {
    let stat;
    try {
      stat = fs.statSync(p);
    } catch {
      fail(`no such file or directory: ${p}`);
    }
    if (stat.isDirectory()) walk(p);
    else files.push(p);
  }
  return files;
}

function checkFile(K, globals, file) {
  const text = fs.readFileSync(file, "utf8").replace(/^\uFEFF/, "");
  const code = K.KustoCode.ParseAndAnalyze(text, globals);
  const list = code.GetDiagnostics(); // a .NET IReadOnlyList: Count / getItem(i)
  const diagnostics = [];
  for (let i = 0; i < list.Count; i++) {
    const d = list.getItem(i);
    // .NET out-parameters become {v} boxes; line and column are 1-based.
    const line = { v: 0 };
    const col = { v: 0 };
    code.TryGetLineAndOffset(d.Start, line, col);
    diagnostics.push({
      line: line.v,
      col: col.v,
      severity: String(d.Severity).toLowerCase(), // "Error", "Warning", "Suggestion", ...
      code: d.Code,
      message: d.Message,
      start: d.Start,
      length: d.Length,
    });
  }
  return { file, diagnostics };
}

const opts = parseArgs(process.argv.slice(2));
const K = loadKusto();
const globals = buildGlobals(K, opts.schema);
const files = collectFiles(opts.paths);
const results = files.map((file) => checkFile(K, globals, file));
const errorCount = results.flatMap((r) => r.diagnostics).filter((d) => d.severity === "error").length;

if (opts.json) {
  console.log(JSON.stringify({ files: results, errors: errorCount }, null, 2));
} else {
  for (const { file, diagnostics } of results) {
    for (const d of diagnostics) {
      console.log(`${file}:${d.line}:${d.col}: ${d.severity}: ${d.message} [${d.code}]`);
    }
  }
  const bad = results.filter((r) => r.diagnostics.some((d) => d.severity === "error")).length;
  console.error(`kqlcheck: ${files.length} file(s) checked, ${errorCount} error(s) in ${bad} file(s)`);
}
process.exit(errorCount > 0 ? 1 : 0);
