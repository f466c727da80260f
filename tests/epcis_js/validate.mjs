// Validate EPCIS 2.0 documents with GS1 France's epcis2.js, an implementation independent of ours.
//
// Reads JSON on stdin: one whole document, or JSON Lines (one document a line). Writes one JSON line per document,
// in order: {"valid": true|false, "errors": ["EPCISDocument/epcisBody/eventList/0/action should be ...", ...]}.
// The errors are epcis2.js's own messages, which start with the schema's name and the JSON path of the fault.
// Exit status: 0 when every document is valid, 1 when one is not, 2 when stdin could not be read.
//
// Offline: the network is closed before epcis2.js loads (it can also send captures; validation must not need it).
import net from 'node:net';

net.Socket.prototype.connect = function refuse() {
  throw new Error('validate.mjs is offline: epcis2.js tried to open a network connection');
};

const { default: epcis } = await import('epcis2.js');

const validate = (doc) => {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return { valid: false, errors: ['not a JSON object'] };
  }
  // The document as we wrote it, against epcis2.js's schemas (the check EPCISDocument.isValid() runs)...
  const raw = epcis.validateEpcisDocument(doc, false);
  if (!raw.success) return { valid: false, errors: raw.errors };
  // ...and the library's own path, as its users call it: parse into its model, serialise, validate again.
  try {
    return new epcis.EPCISDocument(doc).isValid()
      ? { valid: true, errors: [] }
      : { valid: false, errors: ['EPCISDocument.isValid() returned false'] };
  } catch (e) {
    return { valid: false, errors: [String(e.message ?? e)] };
  }
};

const parseInput = (text) => {
  try {
    return [{ doc: JSON.parse(text) }];
  } catch {
    return text.split('\n').filter((line) => line.trim() !== '').map((line) => {
      try {
        return { doc: JSON.parse(line) };
      } catch (e) {
        return { notJson: e.message };
      }
    });
  }
};

let text;
try {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  text = Buffer.concat(chunks).toString('utf8');
} catch (e) {
  process.stderr.write(`validate.mjs: could not read stdin: ${e.message}\n`);
  process.exit(2);
}

let allValid = true;
for (const { doc, notJson } of parseInput(text)) {
  const result = notJson === undefined ? validate(doc) : { valid: false, errors: [`not JSON: ${notJson}`] };
  allValid &&= result.valid;
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
process.exitCode = allValid ? 0 : 1;
