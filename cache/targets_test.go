package cache_test

import (
	"testing"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/cache/redistest"
	"github.com/oidcgate/oidcgate/cache/storetest"
)

func targetOpener(open storetest.Open) storetest.OpenTargets {
	return func(t *testing.T, cfg cache.Config) storetest.TargetStore {
		t.Helper()
		return open(t, cfg).(storetest.TargetStore)
	}
}

func TestTargetsMemory(t *testing.T) { storetest.RunTargets(t, targetOpener(openMemory)) }

func TestTargetsBolt(t *testing.T) { storetest.RunTargets(t, targetOpener(openBolt)) }

func TestTargetsBoltDurable(t *testing.T) { storetest.RunTargetsDurable(t, targetOpener(openBolt)) }

func TestTargetsRedis(t *testing.T) {
	storetest.RunTargets(t, targetOpener(redisOpener(redistest.Start(t))))
}

func TestTargetsRedisDurable(t *testing.T) {
	storetest.RunTargetsDurable(t, targetOpener(redisOpener(redistest.Start(t))))
}
