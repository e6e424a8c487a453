// Lints Cypher statements with Neo4j's own front-end (parser + semantic analysis, compiled to
// JavaScript in @neo4j-cypher/language-support), as Neo4j 5 would see them.
//
//   stdin:  a JSON list of statements (strings)
//   stdout: a JSON list with, per statement in input order, {"parameters": [...], "diagnostics":
//           [{"severity", "message", "line", "column", "offsets"}]} (line and column 1-based,
//           offsets 0-based [start, end) into the statement)
//   stderr: one line saying which Cypher version and how many functions/procedures were used
//
// Used by tests/test_cypher_lint.py; installed by `make install` (npm ci in this folder).
import {
  lintCypherQuery,
  parseParameters,
  parseStatementsStrs,
  testData,
} from '@neo4j-cypher/language-support';

const CYPHER_VERSION = 'CYPHER 5';

// The package ships, as `testData.mockSchema`, the functions and procedures of a real Neo4j
// server per Cypher version (the fields of SHOW FUNCTIONS / SHOW PROCEDURES). That server had
// the APOC and GDS plugins installed; those are not part of Neo4j, so they are left out and
// calling one is an error, like calling FalkorDB's db.idx.* procedures. It was an Enterprise
// server: Enterprise-only procedures (dbms.cluster.*, ...) are accepted.
const PLUGIN_NAMESPACES = ['apoc.', 'gds.'];

function builtIns(registry) {
  if (!registry) throw new Error(`the package ships no registry for ${CYPHER_VERSION}`);
  return Object.fromEntries(
    Object.entries(registry).filter(([name]) => !PLUGIN_NAMESPACES.some((ns) => name.startsWith(ns))),
  );
}

const functions = builtIns(testData.mockSchema.functions?.[CYPHER_VERSION]);
const procedures = builtIns(testData.mockSchema.procedures?.[CYPHER_VERSION]);
// A guard against a package update that ships a different (or empty) registry.
for (const [kind, registry, expected] of [
  ['function', functions, ['count', 'coalesce', 'elementId']],
  ['procedure', procedures, ['db.labels', 'db.index.fulltext.queryNodes']],
]) {
  const missing = expected.filter((name) => !(name in registry));
  if (missing.length) throw new Error(`built-in ${kind}s missing from the shipped registry: ${missing}`);
}

const SEVERITY = { 1: 'error', 2: 'warning', 3: 'information', 4: 'hint' };

// Some semantic errors (e.g. bad index OPTIONS) come with range -1:-1 but good offsets.
function lineAndColumn(statement, d) {
  const { line, character } = d.range.start;
  if (line >= 0 && character >= 0) return { line: line + 1, column: character + 1 };
  const before = statement.slice(0, Math.max(0, d.offsets.start)).split('\n');
  return { line: before.length, column: before.at(-1).length + 1 };
}

function lint(statement) {
  // The driver sends each statement on its own with its parameters; declare exactly the
  // parameters the statement uses, so "Parameter $x is not defined" never fires but nothing
  // else is relaxed. Console commands (:param, :use, ...) are not Cypher a driver can send.
  const parameters = parseParameters(statement, false);
  const dbSchema = {
    defaultLanguage: CYPHER_VERSION,
    functions: { [CYPHER_VERSION]: functions },
    procedures: { [CYPHER_VERSION]: procedures },
    parameters: Object.fromEntries(parameters.map((name) => [name, null])),
  };
  const { diagnostics } = lintCypherQuery(statement, dbSchema, { consoleCommandsEnabled: false });
  const out = diagnostics.map((d) => ({
    severity: SEVERITY[d.severity] ?? String(d.severity),
    message: d.message,
    ...lineAndColumn(statement, d),
    offsets: [d.offsets.start, d.offsets.end],
  }));
  // A driver runs one statement per call: a second one after a `;` would fail there.
  const count = parseStatementsStrs(statement).filter((s) => s.trim().length > 0).length;
  if (count !== 1) {
    out.push({ severity: 'error', message: `expected exactly one statement, found ${count}`,
               line: 1, column: 1, offsets: [0, statement.length] });
  }
  return { parameters, diagnostics: out };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

const statements = JSON.parse(await readStdin());
if (!Array.isArray(statements) || !statements.every((s) => typeof s === 'string')) {
  throw new Error('stdin must be a JSON list of strings');
}
process.stderr.write(`${CYPHER_VERSION}, ${Object.keys(functions).length} built-in functions, ` +
                     `${Object.keys(procedures).length} built-in procedures\n`);
process.stdout.write(JSON.stringify(statements.map(lint)) + '\n');
