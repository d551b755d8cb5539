// A refusal: what any rule (a decider, a service) throws to say no to a command, with the code
// the caller gets (`not_found`, `conflict`, `forbidden`, `invalid_command`…) and, where it
// helps, details. The command responder (libs/messaging) turns it into the caller's rejected
// reply; the CLI maps the code to its exit code. One class, so a handler needs no try/catch.
export class Refusal extends Error {
  override readonly name: string = 'Refusal';
  constructor(readonly code: string, message: string, readonly details?: unknown) {
    super(message);
  }
}
