/**
 * Error classes shared by every castore and store service. Frontends map them to exit codes
 * and gRPC status codes, so each class says what kind of failure it is, not where it happened.
 *
 * @module
 */

/** A request was malformed: bad digest length, invalid Directory, broken closure, ... */
export class InvalidRequestError extends Error {
  /** Creates the error with a message that names the culprit. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InvalidRequestError";
  }
}

/** Something that must exist does not (a blob, a directory, a path info). */
export class NotFoundError extends Error {
  /** Creates the error with a message that names what is missing. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NotFoundError";
  }
}

/** A backend failed: I/O, database, corrupt data, an inconsistent store. */
export class StorageError extends Error {
  /** Creates the error with a message that names the backend and the object. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StorageError";
  }
}

/** A remote service could not be reached or the connection was lost. */
export class UnavailableError extends Error {
  /** Creates the error with a message that names the address. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UnavailableError";
  }
}
