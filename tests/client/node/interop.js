// A stand-in for the original fastPort Node client: its JSON frames and its v1 envelope
// (AES-256-CBC, base64(iv) + ":" + base64(ciphertext), hash = hex SHA-256 of data).
// It subscribes to FP_IN_TOPIC, acks and answers each message on FP_OUT_TOPIC, and exits
// once its answer is acknowledged (ack_received). Progress is printed as JSON lines.
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

const url = process.env.FP_URL;
const sessionName = process.env.FP_SESSION;
const password = process.env.FP_PASSWORD;
const key = Buffer.from(process.env.FP_KEY, 'base64');
const inTopic = process.env.FP_IN_TOPIC;
const outTopic = process.env.FP_OUT_TOPIC;

function report(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function sha256Hex(text) {
  return crypto.createHash('sha256').update(text, 'utf8').digest('hex');
}

function encrypt(plaintext) {
  const iv = crypto.randomBytes(16);
  const cipher = crypto.createCipheriv('aes-256-cbc', key, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const data = iv.toString('base64') + ':' + ciphertext.toString('base64');
  return { data, hash: sha256Hex(data) };
}

function decrypt(data) {
  const [ivText, ciphertextText] = data.split(':');
  const decipher = crypto.createDecipheriv('aes-256-cbc', key, Buffer.from(ivText, 'base64'));
  const plaintext = Buffer.concat([decipher.update(Buffer.from(ciphertextText, 'base64')), decipher.final()]);
  return plaintext.toString('utf8');
}

const deadline = setTimeout(() => {
  report('timeout', {});
  process.exit(2);
}, Number(process.env.FP_TIMEOUT_MS || 10000));

const ws = new WebSocket(url);
let answerId = null;

ws.on('open', () => ws.send(JSON.stringify({ type: 'init', sessionName, password })));
ws.on('error', (err) => {
  report('error', { message: String(err && err.message) });
  process.exit(3);
});
ws.on('message', (raw) => {
  const frame = JSON.parse(raw.toString('utf8'));
  switch (frame.type) {
    case 'init_response':
      if (!frame.success) {
        report('init_failed', { error: frame.error });
        process.exit(4);
      }
      ws.send(JSON.stringify({ type: 'subscribe', topic: inTopic }));
      break;
    case 'subscribe_response':
      report('ready', { topic: frame.topic });
      break;
    case 'message': {
      if (sha256Hex(frame.data) !== frame.hash) {
        report('rejected', { messageId: frame.messageId });
        break; // no ack: the broker redelivers
      }
      const plaintext = decrypt(frame.data);
      ws.send(JSON.stringify({ type: 'ack', topic: frame.topic, messageId: frame.messageId }));
      report('received', { topic: frame.topic, messageId: frame.messageId, plaintext });
      if (answerId === null) {
        answerId = crypto.randomUUID();
        const envelope = encrypt('node got: ' + plaintext);
        ws.send(JSON.stringify({
          type: 'publish', topic: outTopic, data: envelope.data, hash: envelope.hash,
          timestamp: Date.now(), messageId: answerId,
        }));
        report('published', { messageId: answerId });
      }
      break;
    }
    case 'publish_response':
      report('publish_response', { messageId: frame.messageId, success: frame.success, deliveredTo: frame.deliveredTo });
      break;
    case 'ack_received':
      report('ack_received', { messageId: frame.messageId, topic: frame.topic });
      if (frame.messageId === answerId) {
        clearTimeout(deadline);
        ws.close(1000);
      }
      break;
    default:
      report('other', { type: frame.type });
  }
});
ws.on('close', () => process.exit(answerId === null ? 5 : 0));
