// nats.js (3.x) ends every request, answered or not, with `cancel()`, which builds a
// `RequestError('cancelled')` to reject the request's promise: an Error with a stack trace,
// thrown away unseen when the promise was already settled by the reply. Every JetStream publish
// and API call is such a request: 1.4 of the scheduler's 49 busy seconds and 1.9 of the
// coordinator's 57 in a 1,000-VM scale run (tools/bench/src/scale.ts --profile).
//
// settleQuietly() changes that one method of the client's RequestOne: after the reply has
// settled the request, its cancel() only stops the timer and forgets the request, as before,
// without building the Error nobody reads. A cancel of an unsettled request (closing, a
// timeout, a drained connection) still rejects with the client's error as it did.
import { RequestOne } from '@nats-io/transport-node';

const SETTLED = Symbol('cairn.requestSettled');
let installed = false;

type Settleable = RequestOne & { [SETTLED]?: boolean };

/** Installs the change once per process; later calls do nothing. False when the client's shape is not the one expected (left as it is). */
export function settleQuietly(): boolean {
  if (installed) return true;
  const proto = RequestOne.prototype as Settleable;
  const { resolver, cancel } = proto;
  if (typeof resolver !== 'function' || typeof cancel !== 'function' || resolver.length !== 2) return false;
  proto.resolver = function (this: Settleable, err: Error | null, msg) {
    this[SETTLED] = true;
    resolver.call(this, err, msg);
  };
  proto.cancel = function (this: Settleable, err?: Error) {
    if (err === undefined && this[SETTLED] === true) {
      this.timer?.cancel();
      this.mux.cancel(this);
      return;
    }
    cancel.call(this, err);
  };
  installed = true;
  return true;
}
