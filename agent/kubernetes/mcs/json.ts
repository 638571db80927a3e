// JSON values as written to the Kubernetes API (no undefined, no functions).
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };
