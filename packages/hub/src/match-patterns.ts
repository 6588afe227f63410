/**
 * Whether `path` matches any of `patterns`, with the rules of Python's fnmatch that
 * huggingface_hub's allow_patterns use, so patterns copied from Python docs behave the same:
 * `*` matches any run of characters including `/`, `?` one character, `[abc]` / `[!abc]` a set,
 * and a pattern ending in `/` matches everything below that folder.
 */
export function matchesPatterns(path: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => patternToRegExp(p).test(path));
}

const cache = new Map<string, RegExp>();

export function patternToRegExp(pattern: string): RegExp {
  const cached = cache.get(pattern);
  if (cached) return cached;
  const p = pattern.endsWith("/") ? `${pattern}*` : pattern;
  let re = "";
  for (let i = 0; i < p.length; i++) {
    const c = p[i] as string;
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const close = p.indexOf("]", i + 2);
      if (close === -1) {
        re += "\\[";
        continue;
      }
      let body = p.slice(i + 1, close);
      const negate = body.startsWith("!");
      if (negate) body = body.slice(1);
      re += `[${negate ? "^" : ""}${body.replace(/[\\\]^]/g, "\\$&")}]`;
      i = close;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  const out = new RegExp(`^${re}$`, "s");
  cache.set(pattern, out);
  return out;
}
