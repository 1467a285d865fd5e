// Sends COUNT messages through smtpbind with nodemailer's pooled SMTP
// transport (pool: true, maxConnections: 5), the way a legacy Node mailer does.
// Env: SMTP_HOST, SMTP_PORT, SMTP_PASS_FILE (tenant-a's key), COUNT (200).
// Prints one JSON object: {sent, accepted, failed, queueIds, errors}.
'use strict';
const fs = require('fs');
const nodemailer = require('nodemailer');

const host = process.env.SMTP_HOST || '127.0.0.1';
const port = Number(process.env.SMTP_PORT || 2525);
const pass = fs.readFileSync(process.env.SMTP_PASS_FILE, 'utf8');
const count = Number(process.env.COUNT || 200);

const transport = nodemailer.createTransport({
  pool: true,
  maxConnections: 5,
  host,
  port,
  secure: false,
  ignoreTLS: true,
  auth: { user: 'apikey', pass },
  connectionTimeout: 20000,
  greetingTimeout: 20000,
  socketTimeout: 60000,
});

async function main() {
  const jobs = [];
  for (let i = 0; i < count; i++) {
    jobs.push(
      transport.sendMail({
        from: 'app@acme.example',
        to: `customer${i}@example.net`,
        subject: `nodemailer pool ${i}`,
        text: `message ${i} of ${count}\n`,
      }).then(
        (info) => ({ i, ok: info.accepted.length === 1 && /^250 /.test(info.response), info }),
        (err) => ({ i, ok: false, err: String((err && err.response) || err) }),
      ),
    );
  }
  const results = await Promise.all(jobs);
  transport.close();
  const ok = results.filter((r) => r.ok);
  const queueIds = ok.map((r) => (/queued as (\S+)/.exec(r.info.response) || [])[1]).filter(Boolean);
  const errors = results.filter((r) => !r.ok).slice(0, 5).map((r) => `#${r.i}: ${r.err || r.info.response}`);
  console.log(JSON.stringify({ sent: count, accepted: ok.length, failed: count - ok.length, queueIds, errors }));
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
