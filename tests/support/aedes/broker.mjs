// One node of a clustered MQTT 5 broker for the tests and bench/cluster.py: aedes on a loopback
// port, its messages shared with the other nodes through Redis (mqemitter-redis) and its state
// (sessions, retained messages, wills, QoS 1 in flight) kept in Redis (aedes-persistence-redis).
// Not for production (docs/scaling.md: EMQX, VerneMQ, HiveMQ). aedes refuses $share subscriptions
// (SUBACK 0x9E): the gateway falls back to claim-only opening there.
//
//   node broker.mjs --port 1883 --id node-a --redis-port 6379 [--heartbeat-ms 1000]
//
// Prints one JSON line {"event":"broker_listening",...} on stdout once it accepts connections.
import net from 'node:net'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { Aedes } from 'aedes'

const require = createRequire(import.meta.url)
const MQEmitterRedis = require('mqemitter-redis')
const redisPersistence = require('aedes-persistence-redis')

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    id: { type: 'string' },
    'redis-port': { type: 'string', default: '6379' },
    'heartbeat-ms': { type: 'string', default: '1000' }
  }
})
const redis = { host: '127.0.0.1', port: Number(values['redis-port']), family: 4 }

function say (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, node: values.id, ...fields }) + '\n')
}

const broker = await Aedes.createBroker({
  id: values.id,
  // A dead node's clients' wills are published by the others after 3 missed beats.
  heartbeatInterval: Number(values['heartbeat-ms']),
  mq: new MQEmitterRedis(redis),
  persistence: redisPersistence(redis)
})
broker.on('clientError', (client, err) => say('client_error', { client: client?.id, error: err.message }))
broker.on('connectionError', (client, err) => say('connection_error', { client: client?.id, error: err.message }))

const server = net.createServer(broker.handle)
server.listen(Number(values.port), '127.0.0.1', () => say('broker_listening', { port: Number(values.port) }))

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close()
    broker.close(() => process.exit(0))
  })
}
