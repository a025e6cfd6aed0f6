/**
 * A controller's handle on one `pvio host`: a host link with role `control` (the CLI's
 * `pvio cluster`, `pvio compare --cluster`, tests). `call(op, args)` sends a `control` request
 * and returns the host's JSON answer; a host-side error comes back as the same typed error.
 */

import { pvError } from '../../protocol/errors.js';
import { LINK_VERSION } from '../../protocol/link/LinkFrame.js';
import type { JsonMsgBody } from '../../protocol/link/LinkSchema.js';
import type { LinkConn } from '../link/LinkConn.js';
import { connectLink } from '../link/LinkListener.js';

export class ControlClient {
  private constructor(
    readonly conn: LinkConn,
    readonly address: string,
  ) {}

  /** Connects to the host link at `HOST:PORT`. */
  static async connect(address: string, name = `ctl-${process.pid}`, timeoutMs = 5000): Promise<ControlClient> {
    const i = address.lastIndexOf(':');
    const port = Number(address.slice(i + 1));
    if (i <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw pvError('PV_ERR_INVALID_ARG', `host address ${address} must be HOST:PORT`);
    }
    const conn = await connectLink({
      host: address.slice(0, i),
      port,
      hello: { host: name, hostId: 0, version: LINK_VERSION, role: 'control' },
      timeoutMs,
    });
    return new ControlClient(conn, address);
  }

  /** The host's name (from its hello). */
  get host(): string {
    return this.conn.peer?.host ?? this.address;
  }

  /** Runs control op `op` on the host. */
  async call<T = unknown>(op: string, args: Record<string, unknown> = {}, timeoutMs = 180_000): Promise<T> {
    const r = await this.conn.request<JsonMsgBody>(
      'control',
      { json: JSON.stringify({ ...args, op }) },
      undefined,
      timeoutMs,
    );
    return JSON.parse(r.body.json) as T;
  }

  close(): void {
    this.conn.close('controller done');
  }
}
