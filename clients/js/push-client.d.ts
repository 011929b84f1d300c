// TypeScript declarations of push-client.mjs (the contract's frames, typed).

/** The first frame after a successful auth. */
export interface WelcomeFrame {
  type: 'welcome';
  user: string;
  node: string;
  conn: string;
}

/** A message: a user message has no channel; a channel message has one. */
export interface MessageFrame {
  type: 'message';
  id: string;
  topic: string;
  data: unknown;
  /** "base64" when data is a base64 string of a non-JSON payload. */
  encoding?: 'base64';
  channel?: string;
}

export interface SubscribedFrame {
  type: 'subscribed';
  channel: string;
  /** false when `since` was older than the channel's kept history. */
  recovered?: boolean;
}

export interface UnsubscribedFrame {
  type: 'unsubscribed';
  channel: string;
}

export type StateEvent =
  | { state: 'connecting'; attempt: number }
  | { state: 'connected'; welcome: WelcomeFrame }
  | {
      state: 'disconnected';
      code: number;
      reason: string;
      /** true: the client stopped for good (close(), or 4401 that a new token did not cure). */
      final: boolean;
      /** ms until the next attempt, when not final. */
      retryInMs?: number;
    };

/** An error event: channel refusals carry channel and code ("forbidden", ...); a final 4401 carries code 4401. */
export interface PushClientError extends Error {
  code?: string | number;
  channel?: string;
  frame?: unknown;
}

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export interface PushClientOptions {
  /** A fixed connection token (JWT). */
  token?: string;
  /** Called before every connection attempt; on a 4401 it is asked once more. */
  getToken?: () => string | Promise<string>;
  /** WebSocket constructor; default globalThis.WebSocket. */
  WebSocket?: new (url: string) => WebSocketLike;
  /** Backoff: delay = random() * min(backoffMaxMs, backoffBaseMs * 2^attempt). Defaults 500 and 30000. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** A connection up this long (after its welcome) resets the backoff. Default 10000. */
  stableMs?: number;
  /** An attempt with no welcome this long after opening is closed and retried. Default 10000. */
  connectTimeoutMs?: number;
  /** Acks due within this many ms leave in one frame. Default 5. */
  ackDelayMs?: number;
  /** How many recent message ids are remembered to drop duplicates. Default 10000. */
  dedupeSize?: number;
  /** Clock and random source, for tests. */
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  now?: () => number;
  random?: () => number;
}

export interface SubscribeOptions {
  /** A subscription JWT (sub = the user, channel claim = the channel). */
  token?: string;
  /** Deliver the kept messages after this id first. Later resubscriptions use the last id seen. */
  since?: string;
}

export class PushClient {
  constructor(url: string, options: PushClientOptions);
  readonly url: string;
  readonly state: 'connecting' | 'connected' | 'disconnected';
  /** The last welcome frame, or null before the first. */
  readonly welcome: WelcomeFrame | null;
  /** User messages, in order; acked once every handler returned or resolved. */
  on(event: 'message', fn: (m: MessageFrame) => void | Promise<void>): this;
  on(event: 'state', fn: (s: StateEvent) => void): this;
  on(event: 'error', fn: (e: PushClientError) => void): this;
  on(event: 'subscribed', fn: (f: SubscribedFrame) => void): this;
  on(event: 'unsubscribed', fn: (f: UnsubscribedFrame) => void): this;
  off(event: string, fn: (...args: any[]) => unknown): this;
  /** Channel messages go to fn (not to 'message' listeners) and are not acked. */
  subscribe(channel: string, fn: (m: MessageFrame) => void | Promise<void>, options?: SubscribeOptions): this;
  unsubscribe(channel: string): this;
  /** Close for good; no reconnect after this. */
  close(): void;
}

export default PushClient;
