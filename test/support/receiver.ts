// A real webhook receiver on a loopback port: verifies every Standard Webhooks signature and
// answers with whatever status the test scripts, per request.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Received {
  id: string;
  timestamp: string;
  type: string;
  data: Record<string, unknown>;
  verified: boolean;
  status: number;
}

export class Receiver {
  readonly received: Received[] = [];
  private readonly server: http.Server;
  private readonly verifier: Webhook;
  /** Decides the status of each request (and optional headers); 200 by default. */
  answer: (n: number) => { status: number; headers?: Record<string, string> } = () => ({ status: 200 });

  private constructor(secret: string) {
    this.verifier = new Webhook(secret);
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let verified = false;
        try {
          this.verifier.verify(body, req.headers as Record<string, string>);
          verified = true;
        } catch {
          verified = false;
        }
        const parsed = JSON.parse(body) as { type: string; data: Record<string, unknown> };
        const { status, headers } = this.answer(this.received.length);
        this.received.push({ id: String(req.headers['webhook-id']), timestamp: String(req.headers['webhook-timestamp']), type: parsed.type, data: parsed.data, verified, status });
        res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(status < 300 ? 'ok' : 'not now');
      });
    });
  }

  static async start(secret: string): Promise<Receiver> {
    const r = new Receiver(secret);
    await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve));
    return r;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks`;
  }

  /** Accepted (2xx) messages only. */
  get delivered(): Received[] {
    return this.received.filter((r) => r.status >= 200 && r.status < 300);
  }

  async waitFor(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > until) return false;
      await new Promise((r) => setTimeout(r, 25));
    }
    return true;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

/** A fresh whsec_ secret (32 random bytes). */
export function newSecret(): string {
  return `whsec_${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64')}`;
}
