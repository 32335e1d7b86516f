// An error meant for the user: printed as one line, exit status 1 (or the given one), no stack trace.
export class UserError extends Error {
  constructor(message: string, readonly exitStatus = 1) {
    super(message);
    this.name = 'UserError';
  }
}
