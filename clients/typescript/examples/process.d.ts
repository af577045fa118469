// The one Node global the example uses (no @types/node needed to check it).
declare const process: { argv: string[] };
