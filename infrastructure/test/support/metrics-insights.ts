// A parser for the CloudWatch Metrics Insights grammar as its documentation gives it
// ("Metrics Insights query components and syntax"):
//
//   SELECT FUNCTION(metricName)
//   FROM namespace | SCHEMA(namespace [, labelKey [, ...]])
//   [ WHERE labelKey OPERATOR 'labelValue' [AND|OR ...] ]
//   [ GROUP BY labelKey [, ...] ]
//   [ ORDER BY FUNCTION() [ASC | DESC] ]
//   [ LIMIT number ]
//
// FUNCTION is AVG, COUNT, MAX, MIN or SUM; keywords are case-insensitive; names that are not
// letters, digits and `_` (a namespace with `/`) are double-quoted; label values single-quoted.
// A query returns at most 500 series, so LIMIT is 1 to 500. It checks the queries the stack
// writes, so it is strict: what it does not know, it refuses.

export const FUNCTIONS = ["AVG", "COUNT", "MAX", "MIN", "SUM"] as const;
export type Fn = (typeof FUNCTIONS)[number];

export interface Predicate {
  key: string;
  op: "=" | "!=" | "<>";
  value: string;
}

export interface ParsedQuery {
  fn: Fn;
  metric: string;
  namespace: string;
  /** SCHEMA's label keys, or undefined for `FROM namespace` (any dimensions). */
  schema?: string[];
  where: Predicate[];
  groupBy: string[];
  orderBy?: { fn: Fn; direction: "ASC" | "DESC" };
  limit?: number;
}

type Token =
  | { kind: "word"; text: string }
  | { kind: "quoted"; text: string }
  | { kind: "string"; text: string }
  | { kind: "number"; text: string }
  | { kind: "punct"; text: string };

const KEYWORDS = new Set([
  "SELECT", "FROM", "SCHEMA", "WHERE", "GROUP", "BY", "ORDER", "ASC", "DESC", "LIMIT", "AND", "OR",
]);

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) {
      i++;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(i))!;
      tokens.push({ kind: "word", text: m[0] });
      i += m[0].length;
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9]+(?![A-Za-z_.])/.exec(text.slice(i));
      if (!m) {
        throw new Error(`bad number at ${i}: ${text.slice(i, i + 10)}`);
      }
      tokens.push({ kind: "number", text: m[0] });
      i += m[0].length;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let value = "";
      while (j < text.length && text[j] !== c) {
        if (text[j] === "\\" && j + 1 < text.length) {
          j++;
        }
        value += text[j];
        j++;
      }
      if (j >= text.length) {
        throw new Error(`unterminated ${c} at ${i}`);
      }
      tokens.push({ kind: c === '"' ? "quoted" : "string", text: value });
      i = j + 1;
    } else if (text.startsWith("!=", i) || text.startsWith("<>", i)) {
      tokens.push({ kind: "punct", text: text.slice(i, i + 2) });
      i += 2;
    } else if ("(),=".includes(c)) {
      tokens.push({ kind: "punct", text: c });
      i++;
    } else {
      throw new Error(`unexpected ${JSON.stringify(c)} at ${i}`);
    }
  }
  return tokens;
}

class Parser {
  private pos = 0;
  constructor(private readonly tokens: Token[]) {}

  private peek(): Token | undefined {
    return this.tokens[this.pos];
  }

  private isKeyword(word: string): boolean {
    const t = this.peek();
    return t?.kind === "word" && t.text.toUpperCase() === word;
  }

  private keyword(word: string): void {
    if (!this.isKeyword(word)) {
      throw new Error(`expected ${word}, found ${this.describe()}`);
    }
    this.pos++;
  }

  private punct(p: string): void {
    const t = this.peek();
    if (t?.kind !== "punct" || t.text !== p) {
      throw new Error(`expected ${p}, found ${this.describe()}`);
    }
    this.pos++;
  }

  private describe(): string {
    const t = this.peek();
    return t ? `${t.kind} ${JSON.stringify(t.text)}` : "the end";
  }

  /** A metric name, namespace or label key: a bare word (not a keyword) or a "quoted" name. */
  private name(what: string, bareAllowed: (s: string) => boolean = () => true): string {
    const t = this.peek();
    if (t?.kind === "quoted" && t.text !== "") {
      this.pos++;
      return t.text;
    }
    if (t?.kind === "word" && !KEYWORDS.has(t.text.toUpperCase()) && bareAllowed(t.text)) {
      this.pos++;
      return t.text;
    }
    throw new Error(`expected ${what}, found ${this.describe()}`);
  }

  private fn(): Fn {
    const t = this.peek();
    const upper = t?.kind === "word" ? t.text.toUpperCase() : "";
    if (!(FUNCTIONS as readonly string[]).includes(upper)) {
      throw new Error(`expected one of ${FUNCTIONS.join(", ")}, found ${this.describe()}`);
    }
    this.pos++;
    return upper as Fn;
  }

  private namespace(): string {
    // A bare namespace may hold only letters, digits and `_`; anything else is quoted.
    return this.name("a namespace", (s) => /^[A-Za-z0-9_]+$/.test(s));
  }

  private predicate(out: Predicate[]): void {
    if (this.peek()?.kind === "punct" && this.peek()!.text === "(") {
      this.punct("(");
      this.condition(out);
      this.punct(")");
      return;
    }
    const key = this.name("a label key");
    const t = this.peek();
    if (t?.kind !== "punct" || !["=", "!=", "<>"].includes(t.text)) {
      throw new Error(`expected =, != or <>, found ${this.describe()}`);
    }
    this.pos++;
    const v = this.peek();
    if (v?.kind !== "string") {
      throw new Error(`expected a 'label value', found ${this.describe()}`);
    }
    this.pos++;
    out.push({ key, op: t.text as Predicate["op"], value: v.text });
  }

  private condition(out: Predicate[]): void {
    this.predicate(out);
    while (this.isKeyword("AND") || this.isKeyword("OR")) {
      this.pos++;
      this.predicate(out);
    }
  }

  parse(): ParsedQuery {
    this.keyword("SELECT");
    const fn = this.fn();
    this.punct("(");
    const metric = this.name("a metric name");
    this.punct(")");
    this.keyword("FROM");
    let namespace: string;
    let schema: string[] | undefined;
    if (this.isKeyword("SCHEMA")) {
      this.pos++;
      this.punct("(");
      namespace = this.namespace();
      schema = [];
      while (this.peek()?.kind === "punct" && this.peek()!.text === ",") {
        this.punct(",");
        schema.push(this.name("a label key"));
      }
      this.punct(")");
    } else {
      namespace = this.namespace();
    }
    const where: Predicate[] = [];
    if (this.isKeyword("WHERE")) {
      this.pos++;
      this.condition(where);
    }
    const groupBy: string[] = [];
    if (this.isKeyword("GROUP")) {
      this.pos++;
      this.keyword("BY");
      groupBy.push(this.name("a label key"));
      while (this.peek()?.kind === "punct" && this.peek()!.text === ",") {
        this.punct(",");
        groupBy.push(this.name("a label key"));
      }
    }
    let orderBy: ParsedQuery["orderBy"];
    if (this.isKeyword("ORDER")) {
      this.pos++;
      this.keyword("BY");
      const orderFn = this.fn();
      this.punct("(");
      this.punct(")");
      let direction: "ASC" | "DESC" = "ASC";
      if (this.isKeyword("ASC") || this.isKeyword("DESC")) {
        direction = (this.peek() as { text: string }).text.toUpperCase() as "ASC" | "DESC";
        this.pos++;
      }
      orderBy = { fn: orderFn, direction };
    }
    let limit: number | undefined;
    if (this.isKeyword("LIMIT")) {
      this.pos++;
      const t = this.peek();
      if (t?.kind !== "number") {
        throw new Error(`expected a number after LIMIT, found ${this.describe()}`);
      }
      this.pos++;
      limit = Number(t.text);
      if (limit < 1 || limit > 500) {
        throw new Error(`LIMIT ${limit}: a query returns 1 to 500 series`);
      }
    }
    if (this.peek() !== undefined) {
      throw new Error(`unexpected ${this.describe()} after the query`);
    }
    return { fn, metric, namespace, schema, where, groupBy, orderBy, limit };
  }
}

/** The query's parts, or an error saying where it breaks the grammar. */
export function parseMetricsInsights(text: string): ParsedQuery {
  return new Parser(tokenize(text)).parse();
}

/** Whether a text reads as a Metrics Insights query (as opposed to metric math). */
export function isMetricsInsights(text: string): boolean {
  return /^\s*SELECT\b/i.test(text);
}
