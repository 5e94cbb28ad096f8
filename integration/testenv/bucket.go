package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// CreateBucket creates a bucket (an Azure container) on the server.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	var err error
	switch s.Kind {
	case S3:
		_, err = s.S3Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	case GCS:
		err = s.createGCSBucket(ctx, name)
	case Azure:
		var c *azblob.Client
		if c, err = azblob.NewClientFromConnectionString(s.ConnectionString(), nil); err == nil {
			_, err = c.CreateContainer(ctx, name, nil)
		}
	default:
		err = fmt.Errorf("unknown kind %q", s.Kind)
	}
	if err != nil {
		return fmt.Errorf("testenv: creating bucket %s on %s at %s: %w", name, s.Kind, s.Addr, err)
	}
	return nil
}

// CreateLockedBucket creates an S3 bucket with Object Lock enabled (S3
// only: versitygw's posix backend keeps per-object retention and refuses
// deletes before the date; neither fake-gcs-server nor Azurite enforces
// a lock).
func (s *Server) CreateLockedBucket(ctx context.Context, name string) error {
	if s.Kind != S3 {
		return fmt.Errorf("testenv: %s has no object lock to enable", s.Kind)
	}
	_, err := s.S3Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name), ObjectLockEnabledForBucket: aws.Bool(true)})
	if err != nil {
		return fmt.Errorf("testenv: creating locked bucket %s on %s: %w", name, s.Addr, err)
	}
	return nil
}

// NewLockedTarget is NewTarget with a bucket that has Object Lock enabled.
func (s *Server) NewLockedTarget(t testing.TB) *Target {
	t.Helper()
	bucket := BucketName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateLockedBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	url := s.URL(bucket, defaultPrefix)
	return &Target{Server: s, Bucket: bucket, Prefix: defaultPrefix, URL: url, Env: append(s.Env(), "WALVAULT_STORE="+url), Options: s.Options()}
}

// S3Client returns an SDK client for the S3 server with the test
// credentials, for tests that need to look behind the store.
func (s *Server) S3Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       S3Region,
		Credentials:  credentials.NewStaticCredentialsProvider(s.accessKey, s.secretKey, ""),
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
	})
}

func (s *Server) createGCSBucket(ctx context.Context, name string) error {
	body, _ := json.Marshal(map[string]string{"name": name})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+"/storage/v1/b?project=walvault-test", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
