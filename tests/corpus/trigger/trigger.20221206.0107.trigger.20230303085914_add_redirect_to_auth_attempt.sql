-- AlterTable
ALTER TABLE "GitHubAppAuthorizationAttempt" ADD COLUMN     "redirectTo" TEXT NOT NULL DEFAULT '/';
