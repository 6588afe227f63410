import { WorkersConfigError } from "./errors.js";

/** Where a queue lives: the Redis connection and the queue's name. */
export interface QueueLocation {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  /** BullMQ queue name; one trainer per queue. */
  queue: string;
  /** The URL without its password, for messages. */
  display: string;
}

export const DEFAULT_QUEUE_NAME = "edit-r1-rollouts";

/**
 * Parses `redis://[user:password@]host[:port][/db][?queue=name]` (or `rediss://` is refused: TLS is not wired
 * yet). `flag` names the flag in errors.
 */
export function parseQueueUrl(text: string, flag = "--queue"): QueueLocation {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new WorkersConfigError(
      `${flag} ${text}: not a URL; write redis://host:port (optionally /db and ?queue=name), e.g. redis://127.0.0.1:6379`,
    );
  }
  if (url.protocol !== "redis:")
    throw new WorkersConfigError(
      `${flag} ${text}: the scheme must be redis:// (got ${url.protocol}//), e.g. redis://127.0.0.1:6379`,
    );
  const port = url.port === "" ? 6379 : Number(url.port);
  const dbText = url.pathname.replace(/^\//, "");
  const db = dbText === "" ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0)
    throw new WorkersConfigError(
      `${flag} ${text}: the path must be a database number (/0, /1, …), got /${dbText}`,
    );
  const queue = url.searchParams.get("queue") ?? DEFAULT_QUEUE_NAME;
  if (!/^[A-Za-z0-9_.-]+$/.test(queue))
    throw new WorkersConfigError(
      `${flag} ${text}: queue names are letters, digits, '_', '.' and '-', got ${JSON.stringify(queue)}`,
    );
  const hidden = new URL(text);
  if (hidden.password) hidden.password = "***";
  return {
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port,
    db,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    queue,
    display: hidden.toString(),
  };
}

/** The ioredis connection options of a location (BullMQ's `connection`). */
export function connectionOptions(loc: QueueLocation, extra: Record<string, unknown> = {}) {
  return {
    host: loc.host,
    port: loc.port,
    db: loc.db,
    ...(loc.username ? { username: loc.username } : {}),
    ...(loc.password ? { password: loc.password } : {}),
    ...extra,
  };
}
