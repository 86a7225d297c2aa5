// Errors a person understands: what happened and what to do. Input is an
// EnvelopeError (`.code`), a gateway answer (`.status`, `.error`) or any Error.

const TAMPERED = new Set([
  'FRAME_AUTH_FAILED', 'HEADER_AUTH_FAILED', 'COMMITMENT_MISMATCH', 'SIGNATURE_INVALID', 'FRAME_SEQUENCE',
  'MALFORMED_MESSAGE', 'TRAILING_DATA', 'ENCRYPTION_CONTEXT_MISMATCH', 'HASH_MISMATCH',
]);

/** An error from a gateway answer. */
export class GatewayError extends Error {
  constructor(status, error, message) {
    super(message || `${status} ${error}`);
    this.status = status;
    this.error = error || '';
  }
}

function fromGateway(status, error, message = '') {
  if (error === 'IDP_UNAVAILABLE') return 'The sign-in provider cannot be reached right now. Try again in a moment.';
  if (String(error || '').startsWith('TOKEN_')) return `The sign-in was refused: ${message}.`;
  if (status === 401 || error === 'UNAUTHENTICATED') return 'You are not signed in, or your session has expired. Sign in again.';
  if (error === 'CSRF') return 'The request was refused as cross-site. Reload the page and try again.';
  if (error === 'RATE_LIMITED') return 'Too many requests in a short time. Wait a moment and try again.';
  if (error === 'KMS_THROTTLED') return 'KMS is busy (throttled) and did not answer in time. Try again in a moment.';
  if (error === 'KMS_UNAVAILABLE') return 'KMS cannot be reached right now. Try again in a moment.';
  if (error === 'KEY_DISABLED') return 'The encryption key of this file is disabled in KMS. Ask an administrator to enable it.';
  if (error === 'KEY_UNAVAILABLE' || error === 'KEY_NOT_FOUND') return 'The encryption key of this file is scheduled for deletion or gone. Ask an administrator.';
  if (error === 'STORAGE_UNAVAILABLE') return 'File storage is unavailable right now. Nothing was lost: try again in a moment.';
  if (error === 'TLS_REQUIRED') return 'Data keys are only served over HTTPS. Use the https:// address of this site.';
  if (error === 'TOO_LARGE') return `The file is larger than this server accepts. ${message}`;
  if (error === 'CONFLICT') return 'A file with this id already exists. Try again.';
  if (status === 403) return 'You are not allowed to open this file. Ask its owner to share it with you.';
  if (status === 404) return 'This file does not exist, or you may not see it.';
  if (status === 413) return 'The file is larger than this server accepts.';
  return `The server refused the request (${status}${error ? ` ${error}` : ''}). ${message}`.trim();
}

/** A sentence for `e`; `lastGateway` is the last failed gateway answer seen during the operation. */
export function explain(e, lastGateway) {
  if (!e) return 'Unknown error.';
  if (e.name === 'AbortError' || e.code === 'ABORTED') return 'Cancelled.';
  if (e instanceof GatewayError || (e.status && !e.code)) return fromGateway(e.status, e.error, e.message);
  const code = e.code;
  if (code === 'KMS_ERROR' && lastGateway) return fromGateway(lastGateway.status, lastGateway.error, lastGateway.message);
  if (code === 'KMS_ERROR') {
    const m = /gateway answered (\d+) (\S*)/.exec(e.message || '');
    if (m) return fromGateway(Number(m[1]), m[2].replace(/:$/, ''));
    return 'The key service could not be reached. Check your connection and try again.';
  }
  if (code === 'STORAGE_UNREACHABLE') return 'File storage could not be reached (network or storage unavailable). Nothing was saved: try again in a moment.';
  if (code === 'TRUNCATED') return 'The file is truncated: the stored copy is incomplete or damaged. Nothing was saved.';
  if (code === 'HASH_MISMATCH') return 'The file does not match the SHA-256 recorded at upload. Nothing was saved.';
  if (TAMPERED.has(code)) return 'The file has been tampered with or damaged: it failed authentication. Nothing was saved.';
  if (code === 'INVALID_KEY' && /fingerprint|not allowed/i.test(e.message)) {
    return "The gateway's public key is not the one pinned in this browser. Uploads are blocked.";
  }
  if (code === 'NO_DECRYPTABLE_KEY') return 'This file is not encrypted for this server\'s key.';
  if (code) return `${e.message} (${code})`;
  return e.message || String(e);
}
