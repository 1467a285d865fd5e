// One message through smtpbind over TLS, as a Node mailer configured for a
// provider that insists on it: SMTP_MODE=requireTLS (STARTTLS required, port
// SMTP_PORT on the plain listener) or SMTP_MODE=secure (TLS from the first
// byte, the implicit listener). The pod-local CA comes from
// NODE_EXTRA_CA_CERTS; verification stays on (rejectUnauthorized default).
// Prints {code, authorized, response} or {error}.
'use strict';
const fs = require('fs');
const tls = require('tls');
const nodemailer = require('nodemailer');

const mode = process.env.SMTP_MODE;
const transport = nodemailer.createTransport({
  host: 'localhost',
  port: Number(process.env.SMTP_PORT),
  secure: mode === 'secure',
  requireTLS: mode === 'requireTLS',
  auth: { user: 'apikey', pass: fs.readFileSync(process.env.SMTP_PASS_FILE, 'utf8') },
  connectionTimeout: 20000,
});

// Record whether the server's certificate verified (it must: no override).
let authorized = false;
const connect = tls.connect;
tls.connect = function (...args) {
  const socket = connect.apply(this, args);
  socket.once('secureConnect', () => { authorized = socket.authorized; });
  return socket;
};

transport
  .sendMail({
    from: 'billing@acme.example',
    to: `nodemailer-${mode}@example.net`,
    subject: 'tls',
    text: 'hello',
  })
  .then((info) => {
    const code = Number(String(info.response).slice(0, 3));
    console.log(JSON.stringify({ code, authorized, response: info.response }));
  })
  .catch((e) => {
    console.log(JSON.stringify({ error: String(e && e.message) }));
    process.exitCode = 1;
  });
